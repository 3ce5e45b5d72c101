"""kubectl's streaming subresources (exec, attach, port-forward) over the status API's listeners."""
