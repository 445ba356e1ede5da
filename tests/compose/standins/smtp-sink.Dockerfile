# The test's SMTP sink: aiosmtpd prints every message it takes to its log.
FROM tandem-standin/python:bookworm
RUN pip install --no-cache-dir aiosmtpd==1.4.6
ENV PYTHONUNBUFFERED=1
EXPOSE 1025
CMD ["python", "-m", "aiosmtpd", "-n", "-l", "0.0.0.0:1025", "-c", "aiosmtpd.handlers.Debugging", "stdout"]
