"""msanet_lib.data"""
