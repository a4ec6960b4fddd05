"""The tutorial-style baseline app the benchmark compares against."""
