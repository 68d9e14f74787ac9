"""msanet_lib.viz"""
