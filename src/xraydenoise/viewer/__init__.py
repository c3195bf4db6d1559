"""``xraydenoise view``: a local page to look at denoised radiographs before trusting them.

The server (:mod:`xraydenoise.viewer.server`) holds the list of images given on the command
line and sends their pixels, and the denoised results computed on demand, as raw float32
arrays; the page (``static/``) applies window/level, the before/after slider and the
difference map on a canvas itself. Images and methods are addressed by their index in the
lists the server was started with, never by a path taken from the URL.
"""
