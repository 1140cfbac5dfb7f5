"""HTTP contracts of the external systems Accord calls (core banking, e-signature, contact
gateway) and of the webhooks it receives. The adapters in ``activities/`` send and read these;
the embedded services in ``services/`` serve them; the OpenAPI documents in ``docs/openapi/``
are generated from them (``accord service openapi``)."""
