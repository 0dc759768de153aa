"""Line simulator: plays the vendor test apps and the operators of the eight-process Withforce line."""
