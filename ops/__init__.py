"""ops: provision, check and operate a self-hosted AI stack on one small VM."""

__version__ = "0.1.0"
