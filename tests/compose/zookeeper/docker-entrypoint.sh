#!/bin/bash
# The official zookeeper image's entrypoint, for the variables it documents: it writes zoo.cfg
# from the ZOO_* variables the first time the container starts, and the server's id into its data
# directory, then runs the command (zkServer.sh start-foreground).
set -euo pipefail

config="$ZOO_CONF_DIR/zoo.cfg"
if [[ ! -f $config ]]; then
  {
    echo "dataDir=$ZOO_DATA_DIR"
    echo "dataLogDir=$ZOO_DATA_LOG_DIR"
    echo "tickTime=$ZOO_TICK_TIME"
    echo "initLimit=$ZOO_INIT_LIMIT"
    echo "syncLimit=$ZOO_SYNC_LIMIT"
    echo "autopurge.snapRetainCount=$ZOO_AUTOPURGE_SNAPRETAINCOUNT"
    echo "autopurge.purgeInterval=$ZOO_AUTOPURGE_PURGEINTERVAL"
    echo "maxClientCnxns=$ZOO_MAX_CLIENT_CNXNS"
    echo "standaloneEnabled=$ZOO_STANDALONE_ENABLED"
    echo "admin.enableServer=$ZOO_ADMINSERVER_ENABLED"
    # server.N=host:2888:3888;2181 entries, separated by spaces or newlines.
    for server in ${ZOO_SERVERS:-server.1=localhost:2888:3888;2181}; do
      echo "$server"
    done
    if [[ -n ${ZOO_4LW_COMMANDS_WHITELIST:-} ]]; then
      echo "4lw.commands.whitelist=$ZOO_4LW_COMMANDS_WHITELIST"
    fi
    for entry in ${ZOO_CFG_EXTRA:-}; do
      echo "$entry"
    done
  } > "$config.new"
  mv "$config.new" "$config"
fi
if [[ ! -f $ZOO_DATA_DIR/myid ]]; then
  echo "${ZOO_MY_ID:-1}" > "$ZOO_DATA_DIR/myid"
fi
exec "$@"
