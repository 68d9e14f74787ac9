"""msanet_lib.modules"""
