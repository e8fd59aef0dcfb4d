#!/bin/sh
# Run inside the workspace by Example_workspace.
echo "hello from $(pwd)"
