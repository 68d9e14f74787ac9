"""msanet_lib.training"""
