"""Cameras on the edge agent: sources, the watchdog, the motion gate and the camera
component that ties them to the shared detector and the tracker."""
