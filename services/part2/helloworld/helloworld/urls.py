"""URL configuration for helloworld project."""

from django.urls import path

from . import views

urlpatterns = [
    path("hello", views.hello, name="hello"),
    path("form", views.form, name="form"),
    path("upload", views.upload, name="upload"),
]
