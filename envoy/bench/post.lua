-- wrk script: the same form POST on every request (token endpoint, introspection).
-- Usage: wrk ... -s envoy/bench/post.lua URL -- 'form=body&...' ['Basic base64(id:secret)']
init = function(args)
  wrk.method = "POST"
  wrk.body = args[1]
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  if args[2] and #args[2] > 0 then wrk.headers["Authorization"] = args[2] end
end
