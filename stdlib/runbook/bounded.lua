-- runbook.bounded: a cache bounded by count, emptied whole when full.
--
-- For values worked out from a string a runbook passes on every call (a
-- command name's capitals, a URL's parts): a runbook uses a few dozen such
-- strings, but one making them up must not grow the cache without end, and
-- a weak table never drops a string key.  Emptying whole keeps a lookup
-- one index and a store two, with no order to keep.
--
--   local cache = bounded(256)
--   local v = cache.items[k]
--   if v == nil then v = work(k); cache:put(k, v) end
local Bounded = {}
Bounded.__index = Bounded

function Bounded:put(k, v)
  if self.n >= self.max then self.items, self.n = {}, 0 end
  self.items[k], self.n = v, self.n + 1
end

return function(max)
  return setmetatable({ items = {}, n = 0, max = max }, Bounded)
end
