"""msanet_lib.model"""
