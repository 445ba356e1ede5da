# Stand-in for the python image when Docker Hub cannot be reached: Debian's CPython 3.11
# (security fixes backported by Debian), as `python` and `pip` on the PATH like the real one.
FROM tandem-standin/debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /usr/local
# pip inside the builds that start from here trusts this machine's CA bundle (copied in by prepare.sh).
COPY build-ca.crt /etc/ssl/certs/tandem-build-ca.crt
ENV PIP_CERT=/etc/ssl/certs/tandem-build-ca.crt
CMD ["python3"]
