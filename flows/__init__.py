"""One module per job; each exports one @flow with a typed policy parameter."""
