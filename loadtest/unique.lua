-- wrk: a different bearer token on every request, read from $TOKENS_FILE (one per line).
-- Each of the $WRK_THREADS wrk threads takes every Nth line, so no two requests share a token until the list wraps
-- (the run then reports "wrapped" on stderr: mint more tokens for honest cache-miss numbers).
local tokens = {}
local idx, step, wrapped = 0, 1, false
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  -- $WRK_THREADS must equal wrk's -t (default 2) so the threads split the list evenly.
  threads_total = tonumber(os.getenv("WRK_THREADS") or "2")
  local n = 0
  for line in io.lines(os.getenv("TOKENS_FILE")) do
    n = n + 1
    if (n - 1) % threads_total == id then tokens[#tokens + 1] = line end
  end
end

function request()
  idx = idx + 1
  if idx > #tokens then idx = 1; wrapped = true end
  return wrk.format("GET", "/", { ["Authorization"] = "Bearer " .. tokens[idx] })
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    if t:get("wrapped") then
      io.stderr:write("WARNING: token list wrapped: some requests reused a token\n")
      print("WRAPPED")
      return
    end
  end
end
