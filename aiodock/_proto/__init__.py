"""betterproto2-generated containerd API code. Do not edit: run scripts/gen_protos.py."""
