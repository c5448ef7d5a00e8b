# The Vault policy job-manager needs, and nothing more (attach it to the
# AppRole role or to the token the service uses; docs/vault.md shows how).
# `npm run test:vault` writes this file into a real Vault and runs the service
# under it with -no-default-policy, so these three paths are proven enough.

# Read its configuration: the KV v2 secret (data path; mount "secret", name "job-manager").
path "secret/data/job-manager" {
  capabilities = ["read"]
}

# Keep its own token alive (renew at two thirds of the lease).
path "auth/token/renew-self" {
  capabilities = ["update"]
}

# Learn its token's TTL at start, and tell a revoked or expired token from a
# policy that no longer grants "read" when a read answers 403.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
