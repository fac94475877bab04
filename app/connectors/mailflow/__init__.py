"""Learned source: internal senders seen in authenticated or trusted outbound mail flow."""
