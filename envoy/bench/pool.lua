-- wrk script: cycle through a file of bearer tokens, one per line, one per request.
-- Usage: wrk ... -s envoy/bench/pool.lua URL -- /path/to/tokens.txt
local tokens = {}
local i = 0

init = function(args)
  for line in io.lines(args[1]) do
    if #line > 0 then tokens[#tokens + 1] = "Bearer " .. line end
  end
  if #tokens == 0 then error("no tokens in " .. args[1]) end
end

request = function()
  i = i % #tokens + 1
  return wrk.format(nil, nil, { ["Authorization"] = tokens[i] })
end
