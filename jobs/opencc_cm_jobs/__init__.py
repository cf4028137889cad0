"""Jobs that drive the whole stack end to end: the demo (the main job: a generated checkpoint's
bundle, a real Triton server, the gRPC client) and the GPU proof. They sit above every other
package (client, serving, export) and nothing imports them."""
