-- wrk: key rotation under load. Sends tokens of the old key (OLD_TOKENS) until the file named
-- by $MARKER exists (the driver creates it right after publishing the new key), then tokens
-- of the new key (NEW_TOKENS). Every response must be 2xx.
local old, new = {}, {}
local i, switched, n = 0, false, 0

function init(args)
  for l in io.lines(os.getenv("OLD_TOKENS")) do old[#old + 1] = l end
  for l in io.lines(os.getenv("NEW_TOKENS")) do new[#new + 1] = l end
end

function request()
  n = n + 1
  if not switched and n % 100 == 0 then
    local f = io.open(os.getenv("MARKER"), "r")
    if f then f:close(); switched = true end
  end
  local list = switched and new or old
  i = i % #list + 1
  return wrk.format("GET", "/", { ["Authorization"] = "Bearer " .. list[i] })
end
