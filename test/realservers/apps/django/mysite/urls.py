from django.urls import path

from mysite import views

urlpatterns = [
    path("", views.hello),
    path("echo", views.echo),
    path("bytes", views.random_bytes),
    path("stream", views.stream),
]
