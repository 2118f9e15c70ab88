"""The node daemon, in layers (checked by `lint-imports`; a package imports only those below it):

    daemon              start a node: config, stores, composition root, ports
    rpc | s3            the two front doors (edges): parse, call the service layer, render
    service             callers, the one authorization table, errors classified once
    cluster             membership, repair, GC, scrub
    data                coordinator, multipart uploads, chunker, bucket records
    replicas            local replica, transport seam, quorums, anti-entropy
    trust               signed layout and access documents
    runtime             clocks, background loops, budgets, rate limits
    validation, errors  input checks and the domain errors
"""
