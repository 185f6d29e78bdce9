-- wrk script: cycle through /statuses/0 … /statuses/26 so the pipeline sees 27 different bodies.
local n = 0
request = function()
    n = (n + 1) % 27
    return wrk.format("GET", "/statuses/" .. n)
end
