-- wrk: POSTs the signed webhooks of a file made by whatsapp-bodies.pl,
-- each once: thread k of n takes lines k, k + n, k + 2n...
--   wrk ... -s whatsapp-webhook.lua URL -- FILE

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  local n = 2
  sigs, bodies, next_one = {}, {}, 1
  local i = 0
  for line in io.lines(args[1]) do
    i = i + 1
    if (i - id) % n == 0 then
      local tab = line:find("\t", 1, true)
      table.insert(sigs, line:sub(1, tab - 1))
      table.insert(bodies, line:sub(tab + 1))
    end
  end
end

function request()
  local k = next_one
  if k > #bodies then
    print("bodies ran out")
    k = 1
  end
  next_one = next_one + 1
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json",
                                   ["X-Hub-Signature-256"] = sigs[k] },
                    bodies[k])
end
