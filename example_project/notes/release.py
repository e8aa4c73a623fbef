# The tests and the demo change this line to make a new release that is easy to recognise.
RELEASE_NAME = "v1"
