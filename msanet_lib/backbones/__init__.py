"""msanet_lib.backbones"""
