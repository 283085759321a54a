__version__ = "0.1.0"
# the distribution name (what pip installs; what model requirements name)
DIST_NAME = "mlflow-app-agent"
