--[[
  Revokes a worker token. Idempotent: revoking again keeps the first revocation time.

  KEYS[1] worker tokens, by name     <p>wtokens
  KEYS[2] revocation times, by name  <p>wtokens:revoked

  ARGV[1] token name
  ARGV[2] now (revokedAt)

  Returns 1 when the token exists (revoked now or before), 0 when it does not.
]]
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
return 1
