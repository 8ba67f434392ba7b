-- GET of random keys among the preloaded ones; prints a machine-readable RESULT line.
local keys = tonumber(os.getenv("BENCH_KEYS") or "100000")
request = function()
  return wrk.format("GET", "/v1/keys/key:" .. math.random(0, keys - 1))
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.0f %.1f %.1f %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
