"""
Django settings for helloworld project, as `django-admin startproject
helloworld` made them (Django 5.2), trimmed to what the article's /hello and
the tests' /form and /upload need: no database, no installed apps, no
sessions, no templates.

https://docs.djangoproject.com/en/5.2/ref/settings/
"""

import os

# SECURITY WARNING: keep the secret key used in production secret!
# The default is for local development only; set DJANGO_SECRET_KEY elsewhere.
SECRET_KEY = os.environ.get(
    "DJANGO_SECRET_KEY", "django-insecure-dev-only-lsbaws-helloworld-not-for-production")

# SECURITY WARNING: don't run with debug turned on in production!
DEBUG = False

ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = []

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "helloworld.urls"

WSGI_APPLICATION = "helloworld.wsgi.application"

DATABASES = {}

# A 100 KiB form is fine here (Django's default stops at 2.5 MB); the test
# posts more than 64 KiB on purpose, to prove the server reads all of it.
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

LOGGING = {  # errors of the django.request logger go to stderr, as the server's do
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django": {"handlers": ["stderr"], "level": "WARNING"}},
}
