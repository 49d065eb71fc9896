-- wrk script: NGSI-LD entity creates, each a new id, at a paced rate (delay() per request).
local counter = 0
local threads = {}
local thread_id = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
  table.insert(threads, thread)
end

function init(args)
  pause_ms = tonumber(args[1] or "0")
  token = args[2]
  -- Each run's ids of their own (the calibration run's entities stay stored).
  run = args[3] or "w"
end

function delay()
  return pause_ms
end

function request()
  counter = counter + 1
  local id = string.format("urn:ngsi-ld:AirQualityObserved:%s%d-%d", run, tid, counter)
  local body = string.format(
    '{"id":"%s","type":"AirQualityObserved","NO2":{"type":"Property","value":%d,"observedAt":"2026-12-03T08:00:00Z"},"pm25":{"type":"Property","value":%d},"location":{"type":"GeoProperty","value":{"type":"Point","coordinates":[120.1%d,30.2%d]}}}',
    id, counter % 97, counter % 53, counter % 10, tid)
  return wrk.format("POST", "/ngsi-ld/v1/entities",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }, body)
end
