"""Audio in: decoding, resampling, and the log-mel front end."""
