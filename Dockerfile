# Kong Gateway 3.9 (DB-less) with the kong-ace plugin served by its own Python plugin server.
#   docker build -t kong-ace .
#   docker run --rm -p 8000:8000 -p 8001:8001 kong-ace
FROM kong:3.9

USER 0

# Python from Ubuntu's archive; versions follow the base image's release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/kong-ace/src
COPY pyproject.toml README* ./
COPY plugin ./plugin
RUN python3 -m venv /opt/kong-ace/venv \
    && /opt/kong-ace/venv/bin/pip install --no-cache-dir --disable-pip-version-check . \
    && /opt/kong-ace/venv/bin/kong-ace-server --dump > /dev/null

# The Lua companions (ace-context, ace-guard): pure Lua on Kong's PDK, found through
# KONG_LUA_PACKAGE_PATH below (";;" keeps Kong's default path after ours).
COPY plugin/kong /opt/kong-ace/lua/kong

# kong.yml names /opt/kong-ace/specs as specs_dir.
COPY specs /opt/kong-ace/specs
COPY kong.yml /opt/kong-ace/kong.yml
COPY deploy/docker-entrypoint.sh /opt/kong-ace/docker-entrypoint.sh

# The entrypoint starts `kong-ace-server --supervise` (it holds the socket across restarts of
# the serving process and restarts it at once), then runs Kong. Kong gets only the socket and
# the schema query (QUERY_CMD), no START_CMD: with one, Kong 3.9's Admin API `GET /` answers
# 500 and decK cannot talk to it. The socket lives in Kong's prefix, which the kong user owns.
ENV PYTHONUNBUFFERED=1 \
    KONG_DATABASE=off \
    KONG_DECLARATIVE_CONFIG=/opt/kong-ace/kong.yml \
    KONG_PLUGINS=bundled,ace,ace-context,ace-guard \
    KONG_LUA_PACKAGE_PATH="/opt/kong-ace/lua/?.lua;;" \
    KONG_PLUGINSERVER_NAMES=ace \
    KONG_PLUGINSERVER_ACE_SOCKET=/usr/local/kong/ace.socket \
    KONG_PLUGINSERVER_ACE_QUERY_CMD="/opt/kong-ace/venv/bin/kong-ace-server --dump"

WORKDIR /
# Back to the base image's own unprivileged user (its uid is the image's business).
# hadolint ignore=DL3066
USER kong
ENTRYPOINT ["/opt/kong-ace/docker-entrypoint.sh"]
CMD ["kong", "docker-start"]
