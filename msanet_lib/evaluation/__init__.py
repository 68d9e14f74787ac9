"""msanet_lib.evaluation"""
