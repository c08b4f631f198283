# A minimal Django project for the real-servers suite, run by gunicorn as a `fly launch`
# Dockerfile runs `mysite.wsgi`. No database, no apps: views only.
SECRET_KEY = "realservers-test-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "mysite.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True
DATA_UPLOAD_MAX_MEMORY_SIZE = None
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
