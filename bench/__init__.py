"""Side-by-side benchmark of assume-role-chain and its peers against a local moto server.

Run it with ``python -m bench``; see bench/README.md.
"""
