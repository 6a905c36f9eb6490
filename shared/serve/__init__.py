"""Serving a zoo model over HTTP/JSON (tools/serve.py) and measuring it under load (tools/loadtest.py).

One job per file:
    errors.py    RequestError: what a client did wrong (or asked for that is not there), as a status + one line
    backends.py  a loaded model that runs numpy batches: the torch or Keras twin (spec.forward) from a
                 checkpoint, or an ONNX export folder (export.json) run by onnxruntime
    tasks.py     per task: task-native JSON inputs -> checked numpy rows, and rows of outputs -> the JSON of
                 what tools/predict.py prints (the task modules' own functions do both)
    batcher.py   dynamic batching: inputs of concurrent requests gathered into one forward pass
    metrics.py   Prometheus counters and histograms (requests by status, latency, batch sizes)
    service.py   a request body -> inputs -> batches -> a response body, and the model's description
    app.py       the FastAPI application (routes, body limit, one-line JSON errors) and the uvicorn server
    loadgen.py   a closed-loop load generator against 127.0.0.1: latency percentiles and throughput

Nothing here imports torch, TensorFlow or onnxruntime until a backend is loaded.
"""
