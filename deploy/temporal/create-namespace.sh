#!/bin/sh
# The namespace the workers use (auto-setup used to create it), with its history retention.
set -eu
NS="${TEMPORAL_NAMESPACE:-default}"
ADDRESS="${TEMPORAL_ADDRESS:-temporal:7233}"
until temporal operator cluster health --address "$ADDRESS"; do sleep 2; done
temporal operator namespace describe --namespace "$NS" --address "$ADDRESS" >/dev/null 2>&1 \
  || temporal operator namespace create --namespace "$NS" --retention "${TEMPORAL_RETENTION:-7d}" --address "$ADDRESS"
echo "namespace $NS is ready"
