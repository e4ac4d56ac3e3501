"""Autoscaling on load: gateway replicas report what is in flight per engine (GET /load), the
operator averages it over a window and sets `spec.replicas` through the scale subresource."""
