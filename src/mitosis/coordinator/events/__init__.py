"""Publish/subscribe between request handlers and coordinators."""
