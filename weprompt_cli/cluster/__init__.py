"""WePrompt replicas on Ray Serve over one shared session store (`weprompt cluster`).

Ray Serve runs N replicas of the same FastAPI app (`server.app.create_app`, wrapped by
`serve.ingress`); every replica uses the same home on a shared filesystem, so any of them
can open any session from its last checkpoint. WePrompt adds only what Ray Serve cannot
know: which session a request belongs to (it is in the JSON body), and what to do when a
replica that held a session is gone.

Layout:
  keys.py     the session a request belongs to (read from its body); rendezvous ranking
  router.py   SessionRouter, Ray Serve's request-router API: a session's requests go to
              one replica (highest rendezvous score), the rest to the less loaded of two
  proxy.py    ASGI middleware inside Ray's HTTP proxy: puts the session in the
              `x-session-id` header before Ray routes, and answers a clear 503 when the
              replica serving a request died
  replica.py  the deployment: one model, the app, a response header naming the replica,
              and the handover of a session another replica still holds
  options.py  ClusterOptions and the `serve deploy` YAML
  launch.py   start (or join) a Ray cluster, deploy, wait, shut down

Ray is imported only by router.py, replica.py and launch.py, and only when a cluster is
started: `weprompt --help` never imports it. See docs/scaling.md.
"""
