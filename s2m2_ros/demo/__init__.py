# SPDX-License-Identifier: Apache-2.0
"""Demo: stereo data sources, source and recorder nodes, accuracy metrics and reports."""
