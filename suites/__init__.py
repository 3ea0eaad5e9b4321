"""The bundled conformance suites, collected when a target is given (see --vllm-suites)."""
