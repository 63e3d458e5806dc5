-- Mixed visitor contexts for wrk: `wrk -s benchmarks/load.lua URL -- GRANTED REFUSED CORRECTED`.
--
-- The three arguments are real consent cookies ("ep_consent=...") as the shop's consent endpoint
-- set them: after accept, after reject, and after a correction of country and language.
-- Every request picks its path and headers from a shuffled list of all combinations of:
--   path             /, /products, /products/1, /help/returns, /_personalize/why?path=/
--   Accept-Language  de, fr, en, none
--   CF-IPCountry     AT, DE, US, none
--   Referer          Google search, t.co (a shared link), none
--   Cookie           granted, refused, corrected, none
--   Sec-GPC          1, none
--   User-Agent       phone, desktop, crawler
-- and every eighth request comes from a User-Agent and a referring site never seen before, so the
-- parse caches are filled to their bounds and memory growth shows if they are not bounded.

local paths = { "/", "/products", "/products/1", "/help/returns", "/_personalize/why?path=/" }
local languages = { "de-DE,de;q=0.9,en;q=0.5", "fr-FR,fr;q=0.9", "en-US,en;q=0.8", false }
local countries = { "AT", "DE", "US", false }
local referers = { "https://www.google.com/", "https://t.co/Ab12Cd34", false }
local gpcs = { "1", false }
local agents = {
  "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    .. "Version/17.4 Mobile/15E148 Safari/604.1",
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
  "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
}

local threads = {}
local counter = 1

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

local requests = {}
-- Globals, so that done() can read them from each thread.
sent = 0
fresh = 0

function init(args)
  local cookies = { args[1] or false, args[2] or false, args[3] or false, false }
  for _, path in ipairs(paths) do
    for _, language in ipairs(languages) do
      for _, country in ipairs(countries) do
        for _, referer in ipairs(referers) do
          for _, cookie in ipairs(cookies) do
            for _, gpc in ipairs(gpcs) do
              for _, agent in ipairs(agents) do
                local headers = { ["User-Agent"] = agent }
                if language then headers["Accept-Language"] = language end
                if country then headers["CF-IPCountry"] = country end
                if referer then headers["Referer"] = referer end
                if cookie then headers["Cookie"] = cookie end
                if gpc then headers["Sec-GPC"] = gpc end
                table.insert(requests, wrk.format("GET", path, headers))
              end
            end
          end
        end
      end
    end
  end
  -- Each thread walks the combinations in its own order.
  math.randomseed(id)
  for i = #requests, 2, -1 do
    local j = math.random(i)
    requests[i], requests[j] = requests[j], requests[i]
  end
end

function request()
  sent = sent + 1
  if sent % 8 == 0 then
    fresh = fresh + 1
    local n = id * 100000000 + fresh
    return wrk.format("GET", paths[(fresh % #paths) + 1], {
      ["User-Agent"] = string.format(
        "Mozilla/5.0 (Linux; Android 14; Pixel %d) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.%d Mobile", fresh % 9, n
      ),
      ["Referer"] = string.format("https://blog%d.example.org/post", n),
      ["Accept-Language"] = languages[(fresh % 3) + 1],
    })
  end
  return requests[(sent % #requests) + 1]
end

function done(summary, latency, _)
  local variants, unique = 0, 0
  for _, thread in ipairs(threads) do
    variants = variants + thread:get("sent") - thread:get("fresh")
    unique = unique + thread:get("fresh")
  end
  local e = summary.errors
  io.write(string.format(
    'LOAD-RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, "write": %d, '
      .. '"timeout": %d, "status": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, '
      .. '"combinations": %d, "sent_mixed": %d, "sent_unique": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    #paths * #languages * #countries * #referers * 4 * #gpcs * #agents, variants, unique
  ))
end
