# SPDX-License-Identifier: Apache-2.0
# Included through CMAKE_PROJECT_INCLUDE by scripts/build_interfaces.sh only.
#
# The ROS 2 wheels on PyPI export CMake targets whose include folders name the
# machine they were built on (/opt/python/cp311-cp311/...). CMake refuses to
# generate when an imported target names a folder that does not exist, so at
# the end of configuration point those folders at this interpreter's Python and
# NumPy headers instead of creating anything under /opt.

set(_S2M2_WHEEL_PYTHON_ROOT "/opt/python/cp311-cp311")

function(_s2m2_fix_wheel_include_dirs)
  find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
  set(_wheel_python_include "${_S2M2_WHEEL_PYTHON_ROOT}/include/python3.11")
  set(_wheel_numpy_include
    "${_S2M2_WHEEL_PYTHON_ROOT}/lib/python3.11/site-packages/numpy/_core/include")
  get_property(_targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  foreach(_target ${_targets})
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs OR NOT _dirs MATCHES "${_S2M2_WHEEL_PYTHON_ROOT}")
      continue()
    endif()
    list(TRANSFORM _dirs REPLACE "^${_wheel_python_include}$" "${Python3_INCLUDE_DIRS}")
    list(TRANSFORM _dirs REPLACE "^${_wheel_numpy_include}$" "${Python3_NumPy_INCLUDE_DIRS}")
    set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_dirs}")
  endforeach()
endfunction()

cmake_language(DEFER CALL _s2m2_fix_wheel_include_dirs)
