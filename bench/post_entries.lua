-- wrk: POST /v1/entries with a new entry id each request (an id seen before
-- would be answered from the stored entry, not inserted).
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_id", counter)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + thread_id * 7919)
  token = os.getenv("BENCH_TOKEN") or ""
end

local function uuid4()
  return (string.gsub("xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx", "[xy]", function(c)
    local v = (c == "x") and math.random(0, 15) or math.random(8, 11)
    return string.format("%x", v)
  end))
end

request = function()
  local body = '{"id":"' .. uuid4() .. '","kind":"anxious_episode","intensity":5,' ..
               '"occurred_at":"2026-11-20T07:30:00+01:00"}'
  return wrk.format("POST", "/v1/entries",
                    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end
