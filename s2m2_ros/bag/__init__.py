# SPDX-License-Identifier: Apache-2.0
"""``s2m2-bag``: stereo depth for every frame of a recorded rosbag2 bag, offline.

A bag is read with ``rosbags`` (no ROS graph, no DDS participant); its pairs go through
the node's synchronizer and per-frame pipeline, and a new bag gets the node's output
messages beside a copy of the input:

* :mod:`.topics` finds the four stereo topics and names the outputs;
* :mod:`.reader` opens the input and pairs its messages as the node does;
* :mod:`.writer` writes the output bag and recovers an interrupted one for ``--resume``;
* :mod:`.runner` drives a run (batches, progress, Ctrl-C); :mod:`.cli` is the command.

Messages cross between the bag and the pipeline as CDR bytes: the bytes a rosbag2 bag
stores are exactly what ``rclpy.serialization`` reads and writes, so no field is copied
by hand.
"""
