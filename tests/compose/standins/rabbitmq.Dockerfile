# Stand-in for rabbitmq:3.13-management: Debian's RabbitMQ with the management plugin, reading
# /etc/rabbitmq/conf.d/ and keeping its data in /var/lib/rabbitmq like the real image.
FROM tandem-standin/debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends rabbitmq-server \
    && rm -rf /var/lib/apt/lists/* \
    && rabbitmq-plugins enable --offline rabbitmq_management \
    && mkdir -p /etc/rabbitmq/conf.d && chown -R rabbitmq:rabbitmq /etc/rabbitmq /var/lib/rabbitmq
ENV RABBITMQ_CONFIG_FILES=/etc/rabbitmq/conf.d
EXPOSE 5672 15672
CMD ["setpriv", "--reuid=rabbitmq", "--regid=rabbitmq", "--init-groups", "env", "HOME=/var/lib/rabbitmq", "rabbitmq-server"]
