"""Math reasoning environments: boxed answers verified with math-verify, Open-RS rewards."""
