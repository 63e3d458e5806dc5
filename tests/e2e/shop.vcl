# A shared cache in front of the example shop, configured the way a CDN caches HTML: the cache key is
# the URL and the Host plus the request headers the response names in Vary. A Cookie header does not
# bypass the cache, so a page that depends on a cookie must say so itself (Cache-Control: private or
# Vary: Cookie). The fixture fills in the backend address.
vcl 4.1;

backend shop {
    .host = "${BACKEND_HOST}";
    .port = "${BACKEND_PORT}";
}

sub vcl_recv {
    if (req.url == "/__varnish_ready") {
        return (synth(204));
    }
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    # Unlike Varnish's built-in vcl_recv: no pass for requests that carry a Cookie or Authorization.
    return (hash);
}

sub vcl_backend_response {
    if (bereq.uncacheable) {
        return (deliver);
    }
    if (beresp.http.Set-Cookie
        || beresp.http.Cache-Control ~ "(?i)(^|[ ,])(private|no-store|no-cache)([ ,=]|$)"
        || beresp.http.Vary ~ "(^|[ ,])\*([ ,]|$)") {
        # Not stored; remember that for a while so later requests go straight to the backend.
        set beresp.ttl = 60s;
        set beresp.uncacheable = true;
        return (deliver);
    }
    set beresp.ttl = 60s;
    set beresp.grace = 0s;
    return (deliver);
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
