-- wrk script of bench/storm.sh: every request asks for a different node, as in a boot storm,
-- so neither server answers from one hot entry.
--
--   wrk -t T ... -s bench/storm.lua http://127.0.0.1:PORT -- REQUESTS SCENARIO MODE T XFF MARKER_DIR [DELAY_MS]
--
-- REQUESTS   PATH<TAB>FILE<TAB>IP per line (`nodeboot-bench requests`): per node its bootscript,
--            meta-data, user-data and vendor-data, nodes in order; IP is the node's, or -
-- SCENARIO   bootscript: only the known nodes' /boot/v1/bootscript?mac=.. lines
--            close: the same, each request on a new connection (`Connection: close`), as
--            firmware that does not keep connections open asks
--            storm: every known node's line: per node bootscript, meta-data, user-data,
--            vendor-data, then the next node
--            cloudinit: only the cloud-init lines (meta-data, user-data, vendor-data)
--            discovery: only the unknown MACs' bootscript lines (`requests --discovery N`)
-- MODE       bench: walk the requests round and round for wrk's --duration
--            once: each thread takes its slice of the requests, issues it once, and stops
--            itself when it has counted as many responses as its slice (see below)
-- XFF        1: send X-Forwarded-For: <node ip> with cloud-init requests (source check on)
-- MARKER_DIR once mode: each thread writes a file here when it stops (storm.sh waits for them)
-- DELAY_MS   > 0: each connection waits this long after a response before its next request,
--            as a booting node does between its requests; the offered load is then about
--            connections / (DELAY_MS + latency), below saturation, where latency means more
--            than connections / throughput (Little's law) does in the closed loop

local requests_file, scenario, mode, xff, marker_dir, close
local paths, ips = {}, {}
local n = 0

-- Per thread: which request to send next, where the slice starts and how long it is.
local pos, first, slice = 0, 0, 0
local host
local issued, responses = 0, 0
local stopped = false

-- Runs in the main Lua state once per thread, before the thread's init(): number the threads.
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  -- args[0] is the URL; ours follow "--".
  requests_file, scenario, mode = args[1], args[2] or "bootscript", args[3] or "bench"
  local nthreads = tonumber(args[4] or "1")
  xff, marker_dir = args[5] == "1", args[6] or ""
  local delay_ms = tonumber(args[7] or "0") or 0
  -- Which lines a scenario takes, by the tree file's first directory (`requests`).
  local kinds = ({
    bootscript = { bootscript = true },
    close = { bootscript = true },
    storm = { bootscript = true, ["cloud-init"] = true },
    cloudinit = { ["cloud-init"] = true },
    discovery = { discovery = true },
  })[scenario]
  assert(kinds, "unknown scenario " .. tostring(scenario))
  close = scenario == "close"
  for line in io.lines(requests_file) do
    local path, file, ip = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)$")
    if path and kinds[file:match("^[^/]+")] then
      n = n + 1
      -- Only cloud-init requests are subject to the source check.
      paths[n], ips[n] = path, (ip ~= "-" and path:sub(1, 12) == "/cloud-init/") and ip or nil
    end
  end
  assert(n > 0, "no " .. scenario .. " requests in " .. tostring(requests_file))
  host = wrk.headers["Host"]
  -- wrk gives every thread the same script but its own state: split the requests by thread id.
  first = math.floor(n * id / nthreads)
  slice = math.floor(n * (id + 1) / nthreads) - first
  pos = first
  -- A response() function makes wrk hand every header and body to Lua, which costs client CPU
  -- the throughput runs must not pay: only once mode has one. wrk looks for it after thread
  -- 0's init(), so defining it here works.
  if mode == "once" then
    response = once_response
  end
  -- Likewise delay(): wrk looks for it after thread 0's init(); without it, no timer per request.
  if delay_ms > 0 then
    delay = function() return delay_ms end
  end
end

function request()
  -- pos counts requests from 0 and goes round; the Lua tables are 1-based.
  local k = pos % n + 1
  local path, ip = paths[k], ips[k]
  pos = pos + 1
  issued = issued + 1
  -- Built by hand rather than with wrk.format(): it runs for every request, on the same two
  -- cores as the server under test, so it should cost the client as little as possible.
  if xff and ip then
    return "GET " .. path .. " HTTP/1.1\r\nHost: " .. host .. "\r\nX-Forwarded-For: " .. ip .. "\r\n\r\n"
  end
  if close then
    -- wrk opens a new connection once the server has closed this one.
    return "GET " .. path .. " HTTP/1.1\r\nHost: " .. host .. "\r\nConnection: close\r\n\r\n"
  end
  return "GET " .. path .. " HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n"
end

function once_response(status, headers, body)
  responses = responses + 1
  -- wrk cannot send "nothing": once its slice is issued, a thread goes on with the next requests
  -- (repeats from the start of the next slice) until its connections are drained. Each
  -- connection carries one request at a time, so when as many responses as the slice has
  -- arrived, at most one request per connection of this thread is unanswered, and any request
  -- stuck longer than --timeout is counted by wrk as a timeout error.
  if not stopped and responses >= slice then
    stopped = true
    if marker_dir ~= "" then
      local f = io.open(marker_dir .. "/thread-" .. id, "w")
      if f then
        f:write(string.format("%d %d %d\n", slice, issued, responses))
        f:close()
      end
    end
    wrk.thread:stop()
  end
end

-- done() runs in wrk's main Lua state, where init() never ran: storm.sh adds what was run.
function done(summary, latency, requests)
  local e = summary.errors
  -- One machine-readable line. Latencies in microseconds; err_status counts HTTP status > 399.
  io.write(string.format(
    "RESULT requests=%d duration_us=%d bytes=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d "
      .. "p999_us=%d max_us=%d mean_us=%.1f "
      .. "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
